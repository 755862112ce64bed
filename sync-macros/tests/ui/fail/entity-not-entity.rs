use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[derive(serde::Serialize, serde::Deserialize, ts_rs::TS)]
struct Plain { id: String }

#[mutations(entities(Plain))]
impl Todos {
    #[mutation("todo/create")]
    async fn create(_tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
