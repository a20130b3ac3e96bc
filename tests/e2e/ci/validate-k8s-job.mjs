// Validates every document of a Kubernetes YAML file against the Kubernetes API schema with the
// kubernetes-models package (Debian's kubectl is too old for Indexed Jobs). Usage:
//   NODE_PATH=<dir>/node_modules node validate-k8s-job.mjs FILE
// Prints one line per document and exits 1 on the first invalid one.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const yaml = require("js-yaml");
const { Job } = require("kubernetes-models/batch/v1");

const documents = yaml.loadAll(readFileSync(process.argv[2], "utf8")).filter((d) => d);
if (documents.length === 0) {
    console.error("no documents");
    process.exit(1);
}
for (const document of documents) {
    if (document.apiVersion !== "batch/v1" || document.kind !== "Job") {
        console.error(`not a batch/v1 Job: ${document.apiVersion} ${document.kind}`);
        process.exit(1);
    }
    try {
        new Job(document).validate();
    } catch (error) {
        console.error(`Job ${document.metadata?.name}: ${error.message}`);
        process.exit(1);
    }
    const spec = document.spec;
    console.log(`valid Job ${document.metadata.name} completionMode=${spec.completionMode ?? "NonIndexed"} completions=${spec.completions ?? 1}`);
}
