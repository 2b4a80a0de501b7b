//! Provider `file`: each message becomes an `.eml` file in `config.dir` (lettre's file
//! transport). For development and for `pgcourier up`'s demo session.

use super::{email, Channel, Outbound, Receipt, SendError};
use async_trait::async_trait;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};

pub struct File {
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl File {
    pub fn new(config: &serde_json::Value) -> Result<File, SendError> {
        let dir = config
            .get("dir")
            .and_then(|d| d.as_str())
            .ok_or_else(|| SendError::permanent("provider file needs config.dir (the folder for .eml files)"))?;
        std::fs::create_dir_all(dir).map_err(|e| SendError::transient(format!("cannot create {dir}: {e}")))?;
        Ok(File { transport: AsyncFileTransport::new(dir) })
    }
}

#[async_trait]
impl Channel for File {
    async fn send(&self, msg: &Outbound) -> Result<Receipt, SendError> {
        let m = email::build(msg)?;
        let id = self.transport.send(m).await.map_err(|e| SendError::transient(format!("writing the .eml failed: {e}")))?;
        Ok(Receipt { external_id: msg.message_id.clone().or(Some(id)), detail: None })
    }
}
