public enum OrbSimVersion { public static let version = "2.2.3" }
