//! The `pgcourier` command line: parse, build config, call into the library.

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pgcourier", version, about = "A Postgres-native messaging daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the schema migrations and triggers to DATABASE_URL.
    Migrate {
        /// PostgreSQL connection string.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { database_url } => {
            let config: tokio_postgres::Config = database_url.parse().context("DATABASE_URL is not a valid connection string")?;
            let mut client = pgcourier::db::connect(&config).await.context("connecting to DATABASE_URL")?;
            let report = pgcourier::db::migrate::migrate(&mut client).await?;
            if report.applied.is_empty() {
                println!("schema is current");
            } else {
                for m in &report.applied {
                    println!("applied {m}");
                }
            }
            println!("triggers {}", if report.triggers_applied { "applied" } else { "already current" });
        }
    }
    Ok(())
}
