use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations]
impl Todos {
    #[mutation("todo/rename")]
    async fn rename(_tx: &mut Tx, (id, title): (String, String)) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
