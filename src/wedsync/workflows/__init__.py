"""DBOS workflows, queues and schedules; thin, they call services."""
