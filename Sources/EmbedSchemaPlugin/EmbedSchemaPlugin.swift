import Foundation
import PackagePlugin

/// Embeds the repository's `schema/*.sql` migrations into the target that uses this plugin, so that one folder is the
/// single source of the spool's SQL and the binaries carry it with them.
@main
struct EmbedSchemaPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let schemaDirectory = context.package.directoryURL.appending(path: "schema")
        let sqlFiles = try FileManager.default.contentsOfDirectory(
            at: schemaDirectory, includingPropertiesForKeys: nil
        )
        .filter { $0.pathExtension == "sql" }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedSchema.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(sqlFiles.count) schema migrations",
                executable: try context.tool(named: "embed-schema").url,
                arguments: [output.path] + sqlFiles.map(\.path),
                inputFiles: sqlFiles,
                outputFiles: [output])
        ]
    }
}
