"""Train one configuration, or a grid with ``-m``: ``python train.py --help`` and the README. The same as ``asc train``.

    python train.py experiment=demo
    python train.py -m window=3,5,7 mask=0,0.1,0.2 seed=0,1,2
"""

from asc.cli.train import main

if __name__ == "__main__":
    main()
