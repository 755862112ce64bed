-- One `todo/create` per request; each wrk thread (run with as many threads as connections) is
-- a client and a scope of its own, so pushes share no lock but the cursors'.
-- PREFIX (env) keeps the clients of two wrk processes apart.
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("tag", (os.getenv("PREFIX") or "w") .. counter)
  table.insert(threads, thread)
end

function init(args)
  seq = 0
  failed = 0
  wrk.method = "POST"
  wrk.path = "/_sync/push"
  wrk.headers["content-type"] = "application/json"
end

function request()
  seq = seq + 1
  local body = string.format(
    '{"mutations":[{"name":"todo/create","scope":"s-%s","args":{"id":"t%d","title":"x"},' ..
    '"client_id":"c-%s","client_seq":%d}]}', tag, seq, tag, seq)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"ok":true', 1, true) then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("failed")
  end
  io.write(string.format("PUSHES %d %.3f FAILED %d\n", summary.requests,
    summary.duration / 1e6, bad + summary.errors.status + summary.errors.connect +
    summary.errors.read + summary.errors.write + summary.errors.timeout))
end
