//! A type that is neither `#[mutations]` nor a hand-written `Mutator` is named as such.

use sync_runtime::Engine;

struct Todos;

fn main() {
    let _engine = Engine::builder(Todos).build();
}
