"""Parses Prometheus text from stdin with prometheus_client (an independent parser) and prints
every sample as JSON: [{"name", "labels", "value"}]. Fails on text the format does not allow."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
json.dump(samples, sys.stdout)
