use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations(namespace = "")]
impl Todos {
    #[mutation]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
