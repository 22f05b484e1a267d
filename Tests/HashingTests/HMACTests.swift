import Foundation
import Hashing
import Testing

@Suite struct HMACTests {
    // RFC 4231 §4.2, §4.3 and §4.7.
    @Test func rfc4231TestCase1() {
        let mac = HMAC.sha256(key: [UInt8](repeating: 0x0B, count: 20), message: "Hi There".utf8)
        #expect(mac.hexString == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    @Test func rfc4231TestCase2() {
        let mac = HMAC.sha256(key: "Jefe".utf8, message: "what do ya want for nothing?".utf8)
        #expect(mac.hexString == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func rfc4231TestCase6LongKey() {
        let mac = HMAC.sha256(
            key: [UInt8](repeating: 0xAA, count: 131),
            message: "Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        #expect(mac.hexString == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func emptyKeyAndMessage() {
        // Python: hmac.new(b"", b"", "sha256").hexdigest()
        let expected = "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        #expect(HMAC.sha256(key: [UInt8](), message: [UInt8]()).hexString == expected)
        #expect(HMAC.sha256(key: Data(), message: "".utf8).hexString == expected)
    }

    @Test func chainedLikeSigV4KeyDerivation() {
        // The output of one HMAC is the key of the next, as in SigV4's date/region/service/request chain.
        let dateKey = HMAC.sha256(key: "AWS4secret".utf8, message: "20150830".utf8)
        let chained = HMAC.sha256(key: dateKey, message: "us-east-1".utf8)
        #expect(chained.count == 32)
        #expect(chained == HMAC.sha256(key: Data(dateKey), message: Array("us-east-1".utf8)))
    }
}
