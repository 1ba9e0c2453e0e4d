"""The site's side: the mean gradient and information of its own rows at the global coefficients,
and its row count for FedAvg's weights. Nothing else leaves the site."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim_logreg.task import data_path, load, statistics

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    x, y = load(data_path(context), context.run_config)
    w = msg.content["arrays"].to_numpy_ndarrays()[0]
    g, h = statistics(x, y, w)
    content = RecordDict(
        {"arrays": ArrayRecord([g, h]), "metrics": MetricRecord({"num-examples": len(y)})}
    )
    return Message(content=content, reply_to=msg)
