use sync_runtime::{mutations, MutationError, Tx};

struct Todos;

#[mutations(bogus)]
impl Todos {
    #[mutation("")]
    fn create(_title: String) -> Option<()> { None }

    #[mutation("todo/toggle")]
    async fn toggle(self, _tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
