#!/usr/bin/env python3
"""Archives made and read with python3's own gzip and zipfile modules, for the decorator tests: the decorators are
tested against what real tools write and read, not only against bytes made by our own code.

Usage: tools/testarchives.py COMMAND ARGS...   (see each command below)
"""
import base64, gzip, hashlib, io, json, sys, zipfile

def pattern_block(seed):
    # 1 MiB: each 4 KiB page is 256 pseudo-random bytes then zeros (deflates about 14 times).
    state = seed
    block = bytearray()
    for _ in range(256):
        page = bytearray()
        for _ in range(32):
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            page += state.to_bytes(8, "little")
        block += page + bytes(4096 - len(page))
    return bytes(block)

def main():
    command = sys.argv[1]
    if command == "gzip":
        # gzip IN OUT: one member, as gzip(1) would write it
        with open(sys.argv[2], "rb") as source, gzip.open(sys.argv[3], "wb") as target:
            target.write(source.read())
    elif command == "pattern-gzip":
        # pattern-gzip OUT MIB: a gzip stream of MIB MiB, streamed; prints the plain bytes' size and sha256
        digest = hashlib.sha256()
        block = pattern_block(7)
        with gzip.open(sys.argv[2], "wb", compresslevel=1) as target:
            for _ in range(int(sys.argv[3])):
                target.write(block)
                digest.update(block)
        print(json.dumps({"size": len(block) * int(sys.argv[3]), "sha256": digest.hexdigest()}))
    elif command == "zeros-gzip":
        # zeros-gzip OUT MIB
        with gzip.open(sys.argv[2], "wb") as target:
            for _ in range(int(sys.argv[3])):
                target.write(bytes(1 << 20))
    elif command == "zip":
        # zip OUT SPEC: SPEC is a JSON file [{"name", "data" (base64), "method": "deflate"|"store", "mode"}]
        with open(sys.argv[3]) as f:
            spec = json.load(f)
        with zipfile.ZipFile(sys.argv[2], "w") as archive:
            for member in spec:
                info = zipfile.ZipInfo(member["name"], date_time=(2024, 5, 1, 12, 0, 0))
                info.compress_type = zipfile.ZIP_STORED if member.get("method") == "store" else zipfile.ZIP_DEFLATED
                if "mode" in member:
                    info.create_system = 3
                    info.external_attr = int(member["mode"], 8) << 16
                archive.writestr(info, base64.b64decode(member["data"]))
        if len(sys.argv) > 4:
            # replace OLD NEW (hex): patch bytes afterwards, e.g. to put a NUL in a name
            with open(sys.argv[2], "rb") as f:
                data = f.read()
            data = data.replace(bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5]))
            with open(sys.argv[2], "wb") as f:
                f.write(data)
    elif command == "many-zip":
        # many-zip OUT COUNT: COUNT one-byte members; past 65,535 zipfile writes zip64 end records
        with zipfile.ZipFile(sys.argv[2], "w") as archive:
            for index in range(int(sys.argv[3])):
                archive.writestr("m/%06d.txt" % index, b"x")
    elif command == "overlapping-zip":
        # overlapping-zip OUT: two directory entries pointing at the same member's bytes
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.txt", b"x" * 100000, compress_type=zipfile.ZIP_DEFLATED)
        data = buffer.getvalue()
        end = data.rfind(b"PK\x05\x06")
        directory_start = int.from_bytes(data[end + 16:end + 20], "little")
        entry = data[directory_start:end]
        twin = entry.replace(b"a.txt", b"b.txt")
        count = 2
        record = bytearray(data[end:])
        record[8:10] = count.to_bytes(2, "little")
        record[10:12] = count.to_bytes(2, "little")
        record[12:16] = (2 * len(entry)).to_bytes(4, "little")
        with open(sys.argv[2], "wb") as f:
            f.write(data[:directory_start] + entry + twin + bytes(record))
    elif command == "read-zip":
        # read-zip ZIP: every member's size and sha256, testzip's verdict, and manifest.json parsed
        result = {"members": {}, "order": []}
        with zipfile.ZipFile(sys.argv[2]) as archive:
            result["testzip"] = archive.testzip()
            for info in archive.infolist():
                data = archive.read(info)
                result["order"].append(info.filename)
                result["members"][info.filename] = {
                    "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                    "compress_type": info.compress_type}
                if info.filename == "manifest.json":
                    result["manifest"] = json.loads(data)
        print(json.dumps(result))
    else:
        sys.exit("unknown command " + command)

main()
