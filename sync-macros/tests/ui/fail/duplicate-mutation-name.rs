use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }

    #[mutation("todo/create")]
    async fn create_again(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
