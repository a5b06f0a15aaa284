"""Parameters, FLOPs, latency and throughput of any detector config (``--help``; the code is
:mod:`effdet_plugin.deploy.benchmark`)."""
from effdet_plugin.deploy.benchmark import main

if __name__ == '__main__':
    main()
