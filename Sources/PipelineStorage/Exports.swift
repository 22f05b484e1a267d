// The writer API's value types (SpoolError, Durability, SpoolOptions, SpooledResource, DestinationSpec) live in the
// Spool module; producers import only PipelineStorage.
@_exported import Spool
