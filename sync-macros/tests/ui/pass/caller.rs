//! `#[caller]` parameters: required and optional, anywhere after the transaction, with
//! `&self`; the caller is not an argument.
use sync_runtime::{Engine, Mutation, MutationError, Tx, mutations};

pub struct User {
    pub name: String,
}

pub struct Notes {
    greeting: String,
}

#[mutations]
impl Notes {
    #[mutation("note/whoami")]
    async fn whoami(&self, _tx: &mut Tx, #[caller] user: &User) -> Result<String, MutationError> {
        Ok(format!("{} {}", self.greeting, user.name))
    }

    #[mutation("note/maybe")]
    async fn maybe(
        _tx: &mut Tx,
        text: String,
        #[caller] user: Option<&User>,
    ) -> Result<String, MutationError> {
        Ok(format!("{text} from {}", user.map_or("nobody", |u| u.name.as_str())))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let engine = Engine::builder(Notes { greeting: "hi".into() }).build();
    let user = User { name: "ada".into() };
    let as_ada = engine
        .push_as(user, vec![Mutation::new("note/whoami", serde_json::json!({}))])
        .await
        .unwrap();
    assert_eq!(as_ada.results[0].decode().unwrap(), Some(serde_json::json!("hi ada")));
    let anonymous = engine
        .push(vec![
            Mutation::new("note/whoami", serde_json::json!({})),
            Mutation::new("note/maybe", serde_json::json!({"text": "t"})),
            Mutation::new("note/maybe", serde_json::json!({"text": "t", "user": "forged"})),
        ])
        .await
        .unwrap();
    assert_eq!(anonymous.results[0].code.as_deref(), Some("unauthorized"));
    assert_eq!(anonymous.results[1].decode().unwrap(), Some(serde_json::json!("t from nobody")));
    assert_eq!(anonymous.results[2].code.as_deref(), Some("invalid_args"));
}
