use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation(name = "todo/create", name = "todo/add")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
