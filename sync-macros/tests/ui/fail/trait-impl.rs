use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

trait Named {}

#[mutations]
impl Named for Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
