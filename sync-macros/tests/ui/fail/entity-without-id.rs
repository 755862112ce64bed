use sync_runtime::Entity;

#[derive(serde::Serialize, serde::Deserialize, Entity)]
struct Note {
    key: String,
}

#[derive(serde::Serialize, serde::Deserialize, Entity)]
#[entity(id = "number", nmae = "invoice")]
struct Invoice {
    key: String,
}

fn main() {}
