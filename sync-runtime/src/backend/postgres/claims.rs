//! Which lane's group holds which keys, and how many pushes each lane has: what a push's
//! choice of lane reads (module `lane`), and what a group keeps until it ends (module `group`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashMap;
use parking_lot::Mutex;

/// The claims of one node's lanes.
pub(super) struct Claims {
    /// The keys the groups hold or their queued pushes need: key → (lane, how many pushes).
    held: Mutex<HashMap<i64, (usize, usize)>>,
    /// Pushes in each lane, queued or in its open group.
    loads: Box<[AtomicUsize]>,
    /// Pushes queued for their turn, all lanes.
    queued: AtomicUsize,
    /// How many pushes make a whole group.
    room: usize,
}

impl Claims {
    pub(super) fn new(lanes: usize, room: usize) -> Arc<Self> {
        Arc::new(Claims {
            held: Mutex::default(),
            loads: (0..lanes.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            queued: AtomicUsize::new(0),
            room,
        })
    }

    /// Chooses the lane of a push that needs `keys` ([`choose`]) and claims them for it.
    pub(super) fn ticket(self: &Arc<Self>, keys: &[i64]) -> Ticket {
        let mut held = self.held.lock();
        let loads = self.loads.iter().map(|load| load.load(Ordering::Relaxed));
        let lane = choose(&held, loads, keys, self.room);
        if let Some(load) = self.loads.get(lane) {
            load.fetch_add(1, Ordering::Relaxed);
        }
        let mut ticket = Ticket {
            claims: Arc::clone(self),
            lane,
            keys: Vec::with_capacity(keys.len()),
        };
        ticket.claim(&mut held, keys);
        ticket
    }

    /// Counts a push as queued until the returned guard goes.
    pub(super) fn queue(self: &Arc<Self>) -> Queued {
        self.queued.fetch_add(1, Ordering::Relaxed);
        Queued(Arc::clone(self))
    }

    /// How many pushes wait for their turn in a lane.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// A push's place in its lane's load and its claim on keys, released when its group ends.
pub(super) struct Ticket {
    claims: Arc<Claims>,
    lane: usize,
    keys: Vec<i64>,
}

impl Ticket {
    /// The lane chosen.
    pub(super) fn lane(&self) -> usize {
        self.lane
    }

    /// Claims `keys` for this push's lane, where no other lane claims them.
    fn claim(&mut self, held: &mut HashMap<i64, (usize, usize)>, keys: &[i64]) {
        for key in keys {
            let (lane, pushes) = held.entry(*key).or_insert((self.lane, 0));
            if *lane == self.lane {
                *pushes += 1;
                self.keys.push(*key);
            }
        }
    }

    /// Claims keys its push locked since it joined.
    pub(super) fn hold(&mut self, keys: &[i64]) {
        let claims = Arc::clone(&self.claims);
        self.claim(&mut claims.held.lock(), keys);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self.claims.held.lock();
        for key in &self.keys {
            if let Some((_, pushes)) = held.get_mut(key) {
                *pushes -= 1;
                if *pushes == 0 {
                    held.remove(key);
                }
            }
        }
        if let Some(load) = self.claims.loads.get(self.lane) {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts a push as queued while it lives.
pub(super) struct Queued(Arc<Claims>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The lane that claims one of `keys`; else the first with room for a whole group, so that
/// concurrent pushes fill a few large groups rather than many small ones; all full, the least
/// loaded.
fn choose(
    held: &HashMap<i64, (usize, usize)>,
    loads: impl Iterator<Item = usize>,
    keys: &[i64],
    room: usize,
) -> usize {
    if let Some(lane) = keys
        .iter()
        .find_map(|key| held.get(key).map(|(lane, _)| *lane))
    {
        return lane;
    }
    (0..)
        .zip(loads)
        .min_by_key(|&(at, load)| {
            let full = load >= room;
            (full, if full { load } else { 0 }, at)
        })
        .map_or(0, |(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: usize = 8;

    fn ticket(claims: &Arc<Claims>, lane: usize, keys: &[i64]) -> Ticket {
        claims.loads[lane].fetch_add(1, Ordering::Relaxed);
        let mut ticket = Ticket {
            claims: Arc::clone(claims),
            lane,
            keys: Vec::new(),
        };
        ticket.claim(&mut claims.held.lock(), keys);
        ticket
    }

    #[test]
    fn a_push_joins_the_lane_of_its_keys_else_the_first_with_room() {
        let held = HashMap::from([(7, (2, 1))]);
        assert_eq!(
            choose(&held, [0, 0, 9].into_iter(), &[1, 7], ROOM),
            2,
            "claimed"
        );
        assert_eq!(
            choose(&held, [3, 0, 0].into_iter(), &[1], ROOM),
            0,
            "room in the first"
        );
        let full = ROOM;
        assert_eq!(
            choose(&held, [full, 5, 0].into_iter(), &[1], ROOM),
            1,
            "the first with room"
        );
        assert_eq!(
            choose(&held, [full + 2, full, full + 1].into_iter(), &[], ROOM),
            1,
            "least loaded"
        );
    }

    #[test]
    fn a_key_stays_with_the_lane_that_claimed_it_until_its_last_push_ends() {
        let claims = Claims::new(2, ROOM);
        let first = ticket(&claims, 0, &[1, 2]);
        let second = ticket(&claims, 1, &[2, 3]);
        let held = |key| claims.held.lock().get(&key).copied();
        assert_eq!(held(2), Some((0, 1)), "the first claim wins");
        assert_eq!(held(3), Some((1, 1)));
        let third = ticket(&claims, 0, &[2]);
        drop(first);
        assert_eq!(held(1), None);
        assert_eq!(held(2), Some((0, 1)), "still claimed by the third");
        drop(third);
        drop(second);
        assert!(claims.held.lock().is_empty());
        assert!(
            claims
                .loads
                .iter()
                .all(|load| load.load(Ordering::Relaxed) == 0)
        );
    }
}
