//! Raw identifiers name the id field, the derived mutation name and the argument without `r#`.

use sync_runtime::{Entity, MutationError, Mutations, Tx, mutations};

#[derive(serde::Serialize, serde::Deserialize, Entity, ts_rs::TS)]
#[entity(id = "type")]
struct Kind {
    r#type: String,
}

struct Kinds;

#[mutations]
impl Kinds {
    #[mutation]
    async fn r#move(tx: &mut Tx, r#type: String) -> Result<(), MutationError> {
        tx.put(&Kind { r#type }).await?;
        Ok(())
    }
}

fn main() {
    assert_eq!(Kind { r#type: "a".to_owned() }.id(), "a");
    let description = Kinds::description();
    let names: Vec<(&str, Vec<&str>)> = description
        .mutations
        .iter()
        .map(|m| (m.name, m.args.iter().map(|arg| arg.name).collect()))
        .collect();
    assert_eq!(names, [("kinds/move", vec!["type"])]);
}
