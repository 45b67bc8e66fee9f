#!/usr/bin/env bash
# The kb_lookup cell of examples/support_desk_pipeline.yaml served with no agensbus code: kcat
# reads the decisions in a consumer group of this cell's own, jq keeps the invokes of the
# cell and writes each one's StepOutcome (echoing the decision's ids and state), and a
# second kcat publishes it on the outcomes topic, keyed by the trajectory id. A real cell
# would look the goal up in its knowledge base where jq makes up the evidence.
#
#   AGENSBUS_KAFKA_BOOTSTRAP=localhost:9092 bash examples/kb_lookup.sh
#
# The event id is the decision id, so a decision read twice gives the same outcome and the
# router absorbs it once. kcat commits what it has read, published or not: an outcome lost
# in a crash is answered by the router's step timeout instead. Needs kcat and jq.
set -euo pipefail

bootstrap=${AGENSBUS_KAFKA_BOOTSTRAP:?set AGENSBUS_KAFKA_BOOTSTRAP to the Kafka bootstrap}
prefix=${AGENSBUS_TOPIC_PREFIX:-agensbus.}
group=${AGENSBUS_WORKER_GROUP:-agensbus-worker}.kb_lookup
cell=${CELL:-kb_lookup}

kcat -C -b "$bootstrap" -G "$group" -X auto.offset.reset=earliest -u -q -f '%s\n' \
  "${prefix}decisions" |
  jq --unbuffered -r --arg cell "$cell" '
    select(.action_kind == "invoke" and .cell == $cell)
    | {
        schema_version: 1,
        event_type: "StepOutcome",
        event_id: .decision_id,
        tenant, decision_id, trajectory_id, step, action, cell,
        status: "succeeded",
        tokens_in: (.state.handoff.goal | length),
        tokens_out: 40,
        delta: {evidence: [
          "KB article on: \(.state.handoff.goal)",
          "Escalation policy for \(.state.task_class // "any") tickets"
        ]},
        state
      }
    | "\(.trajectory_id)\t\(tojson)"' |
  # One producer per outcome: kcat -P reading a pipe sends only once its input ends.
  while IFS= read -r line; do
    printf '%s\n' "$line" | kcat -P -b "$bootstrap" -t "${prefix}outcomes" -K $'\t'
  done
