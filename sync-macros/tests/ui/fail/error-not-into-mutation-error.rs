use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[derive(Debug)]
struct MyError;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MyError> { Ok(()) }
}

fn main() {}
