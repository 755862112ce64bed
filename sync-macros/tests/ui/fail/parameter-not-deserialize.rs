use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

struct Opaque;

#[mutations]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx, _title: String, _extra: Opaque) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
