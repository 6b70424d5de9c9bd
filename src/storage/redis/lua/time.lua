-- The server's clock, as a script so that a cluster routes it by its key (KEYS[1], not read)
-- to the master serving that slot, never to a random node (after a failover, a dead one).
return redis.call('TIME')
