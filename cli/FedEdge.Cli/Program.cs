using FedEdge.Cli.Commands;

// `fededge`: one tool for training, simulation, the cloud service, the edge agent and benchmarks.
return await FedEdgeCommand.Create().Parse(args).InvokeAsync();
