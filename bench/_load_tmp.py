import sys, time
from bench._common import SECRET, database, free_port, function_env, spawn_function, stop
from bench.intake import make_webhooks
from bench.http import wait_until_up, over_http, percentile
with database(ORDER_WEBHOOK_SECRET=SECRET) as (db, settings):
    port = free_port()
    p = spawn_function("webhook_intake", port, function_env(settings))
    try:
        wait_until_up(port)
        over_http(port, make_webhooks(300), 4)
        print("PID", p.pid, flush=True)
        for i in range(int(sys.argv[1])):
            rate, lat = over_http(port, make_webhooks(2000), 16)
            print(f"{rate:.0f}/s p50 {percentile(lat,.5):.1f} p99 {percentile(lat,.99):.1f}", flush=True)
    finally:
        stop(p)
