# Type stubs for the memstash C extension (python/memstash.c): a drop-in for
# python-memcached 1.59's memcache.Client, plus cached() and invalidate().
import pickle
from typing import (Any, Callable, Dict, Hashable, Iterable, List, Mapping, NoReturn, Optional,
                    Tuple, TypeVar, Union)

_T = TypeVar("_T")
_Key = Union[str, bytes, Tuple[int, Union[str, bytes]]]
_MultiKey = Union[_Key, int, Hashable]
_Time = Union[int, float]
_Server = Union[str, Tuple[str, int]]

__version__: str
libmemstash_version: str
SERVER_MAX_KEY_LENGTH: int
SERVER_MAX_VALUE_LENGTH: int
_DEAD_RETRY: int
_SOCKET_TIMEOUT: int

class MemcachedKeyError(Exception): ...
class MemcachedKeyLengthError(MemcachedKeyError): ...
class MemcachedKeyCharacterError(MemcachedKeyError): ...
class MemcachedKeyNoneError(MemcachedKeyError): ...
class MemcachedKeyTypeError(MemcachedKeyError): ...
class MemcachedStringEncodingError(Exception): ...

def cmemcache_hash(key: bytes) -> int: ...
def serverHashFunction(key: bytes) -> int: ...
def useOldServerHashFunction() -> NoReturn: ...  # raises NotImplementedError

class Client:
    MemcachedKeyError = MemcachedKeyError
    MemcachedKeyLengthError = MemcachedKeyLengthError
    MemcachedKeyCharacterError = MemcachedKeyCharacterError
    MemcachedKeyNoneError = MemcachedKeyNoneError
    MemcachedKeyTypeError = MemcachedKeyTypeError
    MemcachedStringEncodingError = MemcachedStringEncodingError
    _FLAG_PICKLE: int
    _FLAG_INTEGER: int
    _FLAG_LONG: int
    _FLAG_COMPRESSED: int
    _FLAG_TEXT: int
    _SERVER_RETRIES: int

    debug: Any
    pickleProtocol: int
    pickler: Any
    unpickler: Any
    compressor: Callable[..., bytes]
    decompressor: Callable[[bytes], bytes]
    persistent_load: Any
    persistent_id: Any
    dead_retry: _Time
    socket_timeout: _Time
    flush_on_reconnect: Any
    server_max_key_length: int
    server_max_value_length: int
    do_check_key: bool
    cache_cas: bool
    cas_ids: Dict[bytes, int]
    stats: Dict[str, int]
    @property
    def servers(self) -> List[Any]: ...
    @property
    def buckets(self) -> List[Any]: ...
    @property
    def picklerIsKeyword(self) -> bool: ...
    @property
    def distribution(self) -> str: ...

    def __init__(
        self,
        servers: Iterable[_Server],
        debug: Any = 0,
        pickleProtocol: int = 0,
        pickler: Any = pickle.Pickler,
        unpickler: Any = pickle.Unpickler,
        compressor: Callable[..., bytes] = ...,
        decompressor: Callable[[bytes], bytes] = ...,
        pload: Optional[Callable[[Any], Any]] = None,
        pid: Optional[Callable[[Any], Any]] = None,
        server_max_key_length: Optional[int] = None,
        server_max_value_length: Optional[int] = None,
        dead_retry: _Time = 30,
        socket_timeout: _Time = 3,
        cache_cas: bool = False,
        flush_on_reconnect: Any = 0,
        check_keys: bool = True,
        *,
        distribution: str = "python",
        spin_us: int = 100,
    ) -> None: ...

    # Storage: True stored, False refused, 0 no server / value too large.
    def set(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
            noreply: bool = False) -> Union[bool, int]: ...
    def add(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
            noreply: bool = False) -> Union[bool, int]: ...
    def replace(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
                noreply: bool = False) -> Union[bool, int]: ...
    def append(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
               noreply: bool = False) -> Union[bool, int]: ...
    def prepend(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
                noreply: bool = False) -> Union[bool, int]: ...
    def cas(self, key: _Key, val: Any, time: _Time = 0, min_compress_len: int = 0,
            noreply: bool = False) -> Union[bool, int]: ...
    def set_multi(self, mapping: Mapping[Any, Any], time: _Time = 0, key_prefix: Union[str, bytes] = "",
                  min_compress_len: int = 0, noreply: bool = False) -> List[Any]: ...

    # Reads.
    def get(self, key: _Key) -> Any: ...
    def gets(self, key: _Key) -> Any: ...
    def get_multi(self, keys: Iterable[Any], key_prefix: Union[str, bytes] = "") -> Dict[Any, Any]: ...

    # Cache-aside without stampedes (meta-protocol leases).
    def cached(self, key: _Key, loader: Callable[[], _T], time: _Time = 0,
               min_compress_len: int = 0, lease_time: int = 30,
               recache_below: int = 0) -> _T: ...
    def invalidate(self, key: _Key, stale_time: _Time = 0) -> int: ...

    # Delete, arithmetic, touch.
    def delete(self, key: _Key, time: Optional[_Time] = None, noreply: bool = False) -> int: ...
    def delete_multi(self, keys: Iterable[Any], time: Optional[_Time] = None,
                     key_prefix: Union[str, bytes] = "", noreply: bool = False) -> int: ...
    def incr(self, key: _Key, delta: int = 1, noreply: bool = False) -> Optional[int]: ...
    def decr(self, key: _Key, delta: int = 1, noreply: bool = False) -> Optional[int]: ...
    def touch(self, key: _Key, time: _Time = 0, noreply: bool = False) -> int: ...

    # Servers.
    def flush_all(self) -> None: ...
    def get_stats(self, stat_args: Optional[str] = None) -> List[Tuple[str, Dict[str, str]]]: ...
    def get_slab_stats(self) -> List[Tuple[str, Dict[Any, Any]]]: ...
    def get_slabs(self) -> List[Tuple[str, Dict[Any, Any]]]: ...
    def set_servers(self, servers: Iterable[_Server]) -> None: ...
    def forget_dead_hosts(self) -> None: ...
    def disconnect_all(self) -> None: ...
    def debuglog(self, str: Any) -> None: ...
    def reset_cas(self) -> None: ...
    def check_key(self, key: bytes, key_extra_len: int = 0) -> None: ...
