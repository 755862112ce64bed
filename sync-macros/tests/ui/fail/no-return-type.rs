use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) {}
}

fn main() {}
