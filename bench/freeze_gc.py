"""`mitmdump -s bench/freeze_gc.py`: once mitmdump runs, start-up's objects leave the garbage
collector's reach (`gc.freeze()`), for `bench/profile_hooks.py --freeze`."""

import gc


class FreezeGC:
    def running(self) -> None:
        gc.collect()
        gc.freeze()


addons = [FreezeGC()]
