use sync_runtime::Entity;

#[derive(serde::Serialize, serde::Deserialize, Entity)]
#[entity(name = "todo item")]
struct TodoItem {
    id: String,
}

fn main() {}
