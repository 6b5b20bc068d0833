"""Scale-out engines: the same gallery work run locally or on a Ray cluster.

``engine`` starts or attaches a Ray session, ``sharded_search`` searches gallery shards in parallel
with an exact top-k merge, ``gallery_transform`` applies a bundle's layer to partitioned Parquet
datasets, and ``layer`` is the one place a worker loads that layer. Ray is the optional ``ray`` extra.
"""
