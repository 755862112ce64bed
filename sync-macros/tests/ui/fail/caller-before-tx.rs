use sync_runtime::{mutations, MutationError, Tx};

pub struct User;
struct Notes;

#[mutations]
impl Notes {
    #[mutation("note/a")]
    async fn a(#[caller] _user: &User, _tx: &mut Tx) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
