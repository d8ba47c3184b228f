# cython: language_level=3
cimport cython


@cython.final
cdef class Event:
    cdef public bytes _body
    cdef public dict _headers
