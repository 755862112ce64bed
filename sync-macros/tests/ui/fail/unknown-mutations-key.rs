use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations(prefix = "todo")]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
