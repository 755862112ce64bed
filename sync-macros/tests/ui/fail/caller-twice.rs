use sync_runtime::{mutations, MutationError, Tx};

pub struct User;
struct Notes;

#[mutations]
impl Notes {
    #[mutation("note/a")]
    async fn a(
        _tx: &mut Tx,
        #[caller] _user: &User,
        #[caller] _again: &User,
    ) -> Result<(), MutationError> {
        Ok(())
    }

    #[mutation("note/b")]
    async fn b(_tx: &mut Tx, #[caller(required)] _user: &User) -> Result<(), MutationError> {
        Ok(())
    }
}

fn main() {}
