-- The raw baseline: the rows one push writes, as one plain transaction (the backends
-- benchmark's raw side): entity upsert, change with a cursor from a sequence, client upsert.
\set r random(1, 1000000000)
BEGIN;
INSERT INTO raw_entities (scope, entity, id, data)
  VALUES ('s-' || :client_id, 'todo', 't' || :client_id || '-' || :r,
          '{"id":"x","title":"x","completed":false}')
  ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data;
INSERT INTO raw_changes (cursor, scope, entity, id, op, data, ts)
  VALUES (nextval('raw_cursor'), 's-' || :client_id, 'todo', 'x', 'create',
          '{"id":"x","title":"x","completed":false}', 0);
INSERT INTO raw_clients (client_id, seq) VALUES ('c-' || :client_id, 1)
  ON CONFLICT (client_id) DO UPDATE SET seq = raw_clients.seq + 1;
COMMIT;
