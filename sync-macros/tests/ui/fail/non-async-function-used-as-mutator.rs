//! The one mistake is reported, and nothing about `Todos` not being a `Mutator`.

use sync_runtime::{Engine, MutationError, Mutations, Tx, mutations};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn needs_mutator<M: sync_runtime::Mutator>(_: M) {}

fn main() {
    needs_mutator(Todos);
    let _engine = Engine::builder(Todos).build();
    let _description = Todos::description();
}
