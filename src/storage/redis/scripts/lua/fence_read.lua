return {now, redis.call('GET', KEYS[1])}
