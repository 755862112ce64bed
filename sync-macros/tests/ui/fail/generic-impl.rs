use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

struct Wrapper<T>(T);

#[mutations]
impl<T> Wrapper<T> {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
