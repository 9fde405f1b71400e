//! The async transport's driver: `dap_hyper::Client` on its own multi-thread runtime.

use super::*;

pub(crate) struct HyperDriver {
    // Field order: the client (and its driver task's channel) goes before the runtime.
    client: dap_hyper::Client,
    runtime: tokio::runtime::Runtime,
    dispatch: Option<tracing::Dispatch>,
}

async fn hyper_call(c: &dap_hyper::Client, call: Call) -> Result<Answer, Failure> {
    Ok(match call {
        Call::ListTables { namespace } => Answer::Tables(c.list_tables(&namespace).await?),
        Call::Schema { namespace, table } => {
            Answer::Schema(c.table_schema(&namespace, &table).await?)
        }
        Call::Query {
            namespace,
            table,
            query,
        } => Answer::Query(c.query(&namespace, &table, query).await?),
        Call::Snapshot {
            namespace,
            table,
            format,
        } => Answer::Query(c.snapshot(&namespace, &table, format).await?),
        Call::Incremental {
            namespace,
            table,
            format,
            since,
            until,
        } => Answer::Query(
            c.incremental(&namespace, &table, format, since, until)
                .await?,
        ),
        Call::GetJob { job } => Answer::Job(c.get_job(&job).await?),
        Call::ObjectUrls { objects } => Answer::Urls(c.object_urls(&objects).await?),
    })
}

impl HyperDriver {
    pub(crate) fn new(
        config: Config,
        dispatch: Option<tracing::Dispatch>,
        options: dap_client::Options,
    ) -> Self {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        if let Some(d) = dispatch.clone() {
            // Every runtime thread (workers and the blocking pool that writes files)
            // logs into the capture for its whole life.
            builder.on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&d));
            });
        }
        let runtime = builder.build().expect("a tokio runtime");
        let client =
            dap_hyper::Client::with_options(config, options).expect("the hyper client builds");
        Self {
            client,
            runtime,
            dispatch,
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        with_logs(self.dispatch.as_ref(), || self.runtime.block_on(f))
    }
}

impl Driver for HyperDriver {
    fn transport(&self) -> Transport {
        Transport::Hyper
    }

    fn logins(&self) -> u64 {
        self.client.logins()
    }

    fn call(&self, call: Call) -> Result<Answer, Failure> {
        self.block_on(hyper_call(&self.client, call))
    }

    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        self.block_on(async {
            let tasks: Vec<_> = calls
                .into_iter()
                .map(|call| {
                    let client = self.client.clone();
                    tokio::spawn(async move { hyper_call(&client, call).await })
                })
                .collect();
            futures_util::future::join_all(tasks)
                .await
                .into_iter()
                .map(|r| r.expect("a client task panicked"))
                .collect()
        })
    }

    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure> {
        let options = spec.options();
        let files = self.block_on(self.client.download(result, dir, &options))?;
        Ok(files.into_iter().map(Downloaded::from).collect())
    }

    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure> {
        use futures_util::StreamExt as _;
        let stream = self.client.records(result);
        self.block_on(async move {
            let items: Vec<_> = stream.collect().await;
            items
                .into_iter()
                .map(|r| r.map(|b| b.to_vec()).map_err(Failure::from))
                .collect()
        })
    }

    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure> {
        use futures_util::StreamExt as _;
        let stream = self.client.json_records(result);
        self.block_on(async move {
            let items: Vec<_> = stream.collect().await;
            items
                .into_iter()
                .map(|r| r.map_err(Failure::from))
                .collect()
        })
    }
}
