# cython: language_level=3
# The compiled layout of fchannel/_event.py's Event (an augmenting .pxd): the
# codec cimports it to read and fill the fields without attribute lookups.
# Python code can read but not rebind them: an Event's body is always bytes.
cimport cython


@cython.final
cdef class Event:
    cdef readonly bytes _body
    cdef readonly dict _headers
