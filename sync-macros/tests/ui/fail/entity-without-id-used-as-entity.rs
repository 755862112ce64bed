//! The one mistake is reported, and nothing about `Note` not being an `Entity`.

use sync_runtime::{Entity, MutationError, Tx, mutations};

#[derive(serde::Serialize, serde::Deserialize, Entity, ts_rs::TS)]
struct Note {
    key: String,
}

struct Notes;

#[mutations(entities(Note))]
impl Notes {
    #[mutation("note/add")]
    async fn add(tx: &mut Tx, key: String) -> Result<(), MutationError> {
        tx.put(&Note { key }).await?;
        Ok(())
    }
}

fn main() {
    let _name = Note::NAME;
}
