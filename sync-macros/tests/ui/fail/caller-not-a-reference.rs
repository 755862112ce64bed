use sync_runtime::{mutations, MutationError, Tx};

pub struct User;
struct Notes;

#[mutations]
impl Notes {
    #[mutation("note/a")]
    async fn a(_tx: &mut Tx, #[caller] _user: User) -> Result<(), MutationError> { Ok(()) }

    #[mutation("note/b")]
    async fn b(_tx: &mut Tx, #[caller] _user: &mut User) -> Result<(), MutationError> { Ok(()) }

    #[mutation("note/c")]
    async fn c(_tx: &mut Tx, #[caller] _user: Option<User>) -> Result<(), MutationError> { Ok(()) }
}

fn main() {}
