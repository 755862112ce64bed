use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    async fn create<T: Default>(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
