use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    async fn helper(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
