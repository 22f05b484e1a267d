// The writer API's value types (SpoolError, Durability, SpoolOptions, SpooledResource, DestinationSpec) live in the
// Spool module, the storage abstraction and the decorators in StorageDecorators; producers import only
// PipelineStorage.
@_exported import Spool
@_exported import StorageDecorators
