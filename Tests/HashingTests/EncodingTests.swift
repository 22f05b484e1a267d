import Hashing
import Testing

@Suite struct EncodingTests {
    @Test func hexString() {
        #expect([UInt8]().hexString == "")
        #expect([0x00, 0x0F, 0xA0, 0xFF].hexString == "000fa0ff")
        #expect(hex("deadbeef").hexString == "deadbeef")
        #expect((UInt8(0)...UInt8(255)).hexString.count == 512)
    }

    @Test func base64BigEndianPadding() {
        // The four checksum bytes always encode to six characters and two padding characters.
        #expect(CRC32C(resuming: 0xFFFF_FFFF).base64BigEndian == "/////w==")
        #expect(CRC32C(resuming: 0xFBEF_BE00).base64BigEndian == "++++AA==")
    }
}
