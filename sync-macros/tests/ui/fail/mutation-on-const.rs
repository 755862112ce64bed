use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/limit")]
    const LIMIT: usize = 3;

    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
