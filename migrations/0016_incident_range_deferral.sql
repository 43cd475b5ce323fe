-- An incident range may be sorted early, once the shortest signal retention has run out, if
-- at most a tenth of its incidents would move to incidents_kept (model::lifecycle,
-- `Lifecycle::incident_range_sort`). The maintenance counts a range once for that: when too
-- many of its incidents are still live, it records so here and leaves the range to the
-- longest retention instead of counting it again at every pass.
ALTER TABLE incident_partitions ADD COLUMN deferred boolean NOT NULL DEFAULT false;
