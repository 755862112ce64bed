//! Every feature of the DSL, exercised through an engine.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_runtime::{Engine, Entity, Mutation, MutationError, Mutations, Tx, mutations};
use ts_rs::TS;

#[derive(Serialize, Deserialize, Entity, TS)]
#[entity(name = "item")]
struct Item {
    id: String,
    count: u32,
}

/// An application error with codes of its own.
enum ShopError {
    SoldOut(String),
}

impl From<ShopError> for MutationError {
    fn from(error: ShopError) -> Self {
        match error {
            ShopError::SoldOut(id) => MutationError::new("sold_out", format!("`{id}` is sold out")),
        }
    }
}

impl From<sync_runtime::StoreError> for ShopError {
    fn from(error: sync_runtime::StoreError) -> Self {
        ShopError::SoldOut(error.to_string())
    }
}

struct Shop {
    max: u32,
}

#[mutations(namespace = "shop", entities(Item))]
impl Shop {
    /// Stocks an item.
    #[mutation("item/stock")]
    async fn stock(&self, tx: &mut Tx, id: String, count: Option<u32>) -> Result<Item, MutationError> {
        let item = Item { id, count: count.unwrap_or(1).min(self.max) };
        tx.put(&item).await?;
        Ok(item)
    }

    /// Takes one.
    #[mutation(name = "item/take")]
    async fn take(tx: &mut Tx, id: String) -> Result<u32, ShopError> {
        let mut item: Item = tx.get(&id).await.ok().flatten().ok_or_else(|| ShopError::SoldOut(id.clone()))?;
        if item.count == 0 {
            return Err(ShopError::SoldOut(id));
        }
        item.count -= 1;
        tx.put(&item).await.map_err(ShopError::from)?;
        Ok(item.count)
    }

    #[mutation]
    async fn reset(tx: &mut Tx) -> Result<(), MutationError> {
        for item in tx.list::<Item>().await? {
            tx.delete::<Item>(&item.id).await?;
        }
        Ok(())
    }

    #[cfg(any())]
    #[mutation("item/never")]
    async fn never(tx: &mut Tx, missing_type: DoesNotExist) -> Result<(), MutationError> {
        Ok(())
    }

    /// Not a mutation: left alone.
    fn helper(&self) -> u32 {
        self.max
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let shop = Shop { max: 5 };
    assert_eq!(shop.helper(), 5);
    let names: Vec<&str> = Shop::description().mutations.iter().map(|m| m.name).collect();
    assert_eq!(names, ["item/stock", "item/take", "shop/reset"]);

    let engine = Engine::builder(shop).build();
    let pushed = engine
        .push(vec![
            Mutation::new("item/stock", json!({"id": "a", "count": 9})),
            Mutation::new("item/take", json!({"id": "a"})),
            Mutation::new("item/take", json!({"id": "b"})),
            Mutation::new("item/stock", json!({"id": "a", "extra": 1})),
            Mutation::new("item/never", json!({})),
            Mutation::new("shop/reset", json!(null)),
        ])
        .await
        .unwrap();
    let r = &pushed.results;
    assert_eq!(r[0].decode().unwrap(), Some(json!({"id": "a", "count": 5})));
    assert_eq!(r[1].decode().unwrap(), Some(json!(4)));
    assert_eq!(r[2].code.as_deref(), Some("sold_out"));
    assert_eq!(r[3].code.as_deref(), Some("invalid_args"));
    assert!(r[3].error.as_deref().unwrap().contains("extra"));
    assert_eq!(r[4].code.as_deref(), Some("unknown_mutation"));
    assert!(r[5].ok && r[5].value.is_none());
    assert_eq!(r[5].changes.len(), 1);
}
