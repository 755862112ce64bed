//! The expansion names nothing from the prelude and nothing by the runtime's usual name: this
//! crate compiles only if that holds (`cargo build -p sync-hygiene`, part of the test command).

#![no_implicit_prelude]
#![allow(dead_code, missing_docs)]

extern crate renamed_runtime;
extern crate serde;

use renamed_runtime::{Entity, MutationError, Tx, mutations};

#[derive(serde::Serialize, serde::Deserialize, Entity)]
#[entity(crate = "renamed_runtime")]
struct Note {
    id: ::std::string::String,
}

struct Notes;

#[mutations(crate = "renamed_runtime")]
impl Notes {
    #[mutation("note/set")]
    async fn set(
        tx: &mut Tx,
        id: ::std::string::String,
        text: ::std::option::Option<::std::string::String>,
    ) -> ::std::result::Result<(), MutationError> {
        let _ = text;
        tx.put(&Note { id }).await?;
        ::std::result::Result::Ok(())
    }
}
